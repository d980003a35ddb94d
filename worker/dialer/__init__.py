"""Placing the outbound call: the port (:mod:`.port`) and its adapters."""
