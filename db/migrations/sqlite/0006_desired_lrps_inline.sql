-- PostgreSQL only (its TOAST threshold): SQLite keeps rows of this size in the page.
SELECT 1
