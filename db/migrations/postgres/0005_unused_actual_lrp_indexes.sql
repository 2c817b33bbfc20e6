DROP INDEX IF EXISTS actual_lrps_state;
DROP INDEX IF EXISTS actual_lrps_since
