"""PostgreSQL adapters: schema migrations (yoyo) and the crosswalk repository/service (psycopg 3)."""
