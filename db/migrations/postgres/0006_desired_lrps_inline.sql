-- A desired LRP row (about 3 KiB: routes, the sealed run info) is kept whole in its page instead
-- of being compressed and moved out of line above 2 KiB: the sealed run info does not compress,
-- so every insert paid a failed compression and a second row in the TOAST table.
ALTER TABLE desired_lrps SET (toast_tuple_target = 8160)
