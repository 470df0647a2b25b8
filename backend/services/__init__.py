"""Services: the API's business logic (study lifecycle from the API side, planning, analysis cache)."""
