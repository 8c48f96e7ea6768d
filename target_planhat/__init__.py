"""target-planhat: Amplitude events into Planhat User Activities."""
