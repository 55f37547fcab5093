"""Role-based access control: permissions as data, roles as permission sets."""
