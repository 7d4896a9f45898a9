"""The database: schema, connection set-up, migrations and repository functions taking a session."""
