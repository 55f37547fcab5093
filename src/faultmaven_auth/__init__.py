"""FaultMaven Auth Service, Enterprise Edition."""

__version__ = "0.1.0"
