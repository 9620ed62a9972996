"""The live status feed (WatchStatusChanges): a hub fed by the replica, and one feed per watcher."""
