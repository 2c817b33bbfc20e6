-- Nothing to do: an InnoDB secondary index ends with the primary key's columns, so
-- actual_lrps_cell_id already serves `WHERE cell_id = ? ORDER BY <primary key>` in order, and
-- actual_lrps_domain and desired_lrps_domain their listings by domain.
SELECT 1
