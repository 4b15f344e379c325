//! Issue 4: messages, shared data and progress (owned by the data-verbs work).
