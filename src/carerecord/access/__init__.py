"""Who may see what: the Principal a request acts as, its roles and scopes, sign-in and tokens.

A layer between ``services`` and ``store`` (ARCHITECTURE.md). Part 1 of issue 4 builds
identity (principals, roles, SMART scopes, the OAuth 2.0 / OpenID Connect server, trusted
external providers); part 2 adds the guarded repository (relationships, consent, break-glass,
audit) on the storage path.
"""
