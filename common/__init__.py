"""Infrastructure shared by the three services; no business rules live here."""
