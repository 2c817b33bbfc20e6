ALTER TABLE desired_lrps ADD COLUMN key_label VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN key_label VARCHAR(255) NOT NULL DEFAULT '';
CREATE INDEX desired_lrps_key_label ON desired_lrps (key_label);
CREATE INDEX tasks_key_label ON tasks (key_label)
