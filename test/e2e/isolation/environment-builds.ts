// Placeholder: filled by the isolation work on this boundary.
export {};
