"""Storage: metadata (SQLAlchemy), the platform graph (DuckDB) and membership bitmaps."""
