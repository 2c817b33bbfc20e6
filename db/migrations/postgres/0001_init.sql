CREATE TABLE IF NOT EXISTS domains (
  domain VARCHAR(255) NOT NULL PRIMARY KEY,
  expire_time BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS domains_expire_time ON domains (expire_time);
CREATE TABLE IF NOT EXISTS desired_lrps (
  process_guid VARCHAR(255) NOT NULL PRIMARY KEY,
  domain VARCHAR(255) NOT NULL,
  log_guid VARCHAR(255) NOT NULL,
  annotation TEXT NOT NULL,
  instances BIGINT NOT NULL,
  memory_mb BIGINT NOT NULL,
  disk_mb BIGINT NOT NULL,
  max_pids BIGINT NOT NULL,
  rootfs VARCHAR(1024) NOT NULL,
  routes BYTEA NOT NULL,
  volume_placement BYTEA NOT NULL,
  placement_tags TEXT NOT NULL,
  metric_tags BYTEA NOT NULL,
  modification_tag_epoch VARCHAR(255) NOT NULL,
  modification_tag_index BIGINT NOT NULL,
  update_strategy BIGINT NOT NULL,
  run_info BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS desired_lrps_domain ON desired_lrps (domain);
CREATE TABLE IF NOT EXISTS actual_lrps (
  process_guid VARCHAR(255) NOT NULL,
  instance_index BIGINT NOT NULL,
  presence BIGINT NOT NULL,
  domain VARCHAR(255) NOT NULL,
  state VARCHAR(32) NOT NULL,
  instance_guid VARCHAR(255) NOT NULL,
  cell_id VARCHAR(255) NOT NULL,
  placement_error VARCHAR(1024) NOT NULL,
  crash_count BIGINT NOT NULL,
  crash_reason VARCHAR(1024) NOT NULL,
  since BIGINT NOT NULL,
  net_info BYTEA NOT NULL,
  internal_routes BYTEA NOT NULL,
  metric_tags BYTEA NOT NULL,
  routable BIGINT NOT NULL,
  availability_zone VARCHAR(255) NOT NULL,
  modification_tag_epoch VARCHAR(255) NOT NULL,
  modification_tag_index BIGINT NOT NULL,
  PRIMARY KEY (process_guid, instance_index, presence)
);
CREATE INDEX IF NOT EXISTS actual_lrps_domain ON actual_lrps (domain);
CREATE INDEX IF NOT EXISTS actual_lrps_cell_id ON actual_lrps (cell_id);
CREATE INDEX IF NOT EXISTS actual_lrps_state ON actual_lrps (state);
CREATE INDEX IF NOT EXISTS actual_lrps_since ON actual_lrps (since);
CREATE TABLE IF NOT EXISTS tasks (
  guid VARCHAR(255) NOT NULL PRIMARY KEY,
  domain VARCHAR(255) NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  first_completed_at BIGINT NOT NULL,
  state BIGINT NOT NULL,
  cell_id VARCHAR(255) NOT NULL,
  result TEXT NOT NULL,
  failed BIGINT NOT NULL,
  failure_reason VARCHAR(1024) NOT NULL,
  rejection_count BIGINT NOT NULL,
  rejection_reason VARCHAR(1024) NOT NULL,
  task_definition BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_domain ON tasks (domain);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state);
CREATE INDEX IF NOT EXISTS tasks_cell_id ON tasks (cell_id);
CREATE INDEX IF NOT EXISTS tasks_updated_at ON tasks (updated_at);
CREATE INDEX IF NOT EXISTS tasks_created_at ON tasks (created_at);
CREATE INDEX IF NOT EXISTS tasks_first_completed_at ON tasks (first_completed_at);
CREATE TABLE IF NOT EXISTS leases (
  lease_key VARCHAR(255) NOT NULL PRIMARY KEY,
  owner VARCHAR(255) NOT NULL,
  value TEXT NOT NULL,
  type_code BIGINT NOT NULL,
  term BIGINT NOT NULL,
  ttl_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_type_code ON leases (type_code, expires_at_ms);
