-- Nothing to do: SQLite's writers take turns, and the fence takes no row lock.
SELECT 1
