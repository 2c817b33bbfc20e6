-- PostgreSQL only (its TOAST threshold): InnoDB's dynamic rows keep rows of this size in the page.
SELECT 1
