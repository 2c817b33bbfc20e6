ALTER TABLE actual_lrps DROP INDEX actual_lrps_state;
ALTER TABLE actual_lrps DROP INDEX actual_lrps_since
