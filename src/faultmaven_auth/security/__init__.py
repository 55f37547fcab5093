"""Security monitoring: security events (``events``) and their export to a SIEM (``siem``)."""
