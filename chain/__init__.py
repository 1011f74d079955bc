"""Chain access for MedChain: client, artifacts, typed contract wrappers, EIP-712, event cursor."""
