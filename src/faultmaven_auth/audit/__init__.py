"""The audit log: what happened, who did it, from where; written with the change itself."""
