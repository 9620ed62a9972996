"""The claims-settlement gatekeeper: gRPC servers, check logic, policy engine and CLI."""
