"""Enterprise SSO: per-organization identity providers and the login flows through them.

``providers`` / ``domains`` hold the configuration (admin API), ``oidc`` runs the
OpenID Connect authorization-code flow, ``provisioning`` turns a verified identity into
one of the organization's users, ``policy`` answers "may this user still use a
password". SAML will add a ``saml`` flow beside ``oidc`` on the same provider model.
"""
