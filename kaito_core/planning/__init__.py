"""Pure planning: Workspace + registry + hardware -> Plan. No I/O in this package."""
