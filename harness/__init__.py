"""The harness: commit mining, offline environments, the sandbox and the agent pipeline.

It depends only on the appliance core (config, db, errors) and never on the CLI.
"""
