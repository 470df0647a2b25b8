"""Database: typed ORM models (`models`) and the engine / session factory (`session`)."""
