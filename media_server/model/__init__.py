"""The vocabulary every layer shares: media units and facts, stream states, registrations.

Modules here import nothing else of ours (a test checks it), so sources, streams,
consumers and the control plane can all depend on them without depending on each other.
"""
