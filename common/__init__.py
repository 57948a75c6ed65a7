"""Infrastructure shared by the three services; no business rules live here."""

VERSION = "1.0.0"
