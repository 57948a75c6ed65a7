"""user_service: accounts, password login, signed access tokens."""
