ALTER TABLE desired_lrps ADD COLUMN IF NOT EXISTS key_label VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS key_label VARCHAR(255) NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS desired_lrps_key_label ON desired_lrps (key_label);
CREATE INDEX IF NOT EXISTS tasks_key_label ON tasks (key_label)
