"""Users, password hashing and the password policy."""
