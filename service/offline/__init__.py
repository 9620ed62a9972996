"""Read-only tools that work off the decision log and the ledgers, never on the request path:
``recheck`` (claims an upheld appeal makes payable) and ``simulate`` (a draft profile's effects)."""
