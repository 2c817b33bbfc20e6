CREATE INDEX IF NOT EXISTS actual_lrps_cell_key ON actual_lrps (cell_id, process_guid, instance_index, presence);
DROP INDEX IF EXISTS actual_lrps_cell_id;
CREATE INDEX IF NOT EXISTS actual_lrps_domain_key ON actual_lrps (domain, process_guid, instance_index, presence);
DROP INDEX IF EXISTS actual_lrps_domain;
CREATE INDEX IF NOT EXISTS desired_lrps_domain_key ON desired_lrps (domain, process_guid);
DROP INDEX IF EXISTS desired_lrps_domain
