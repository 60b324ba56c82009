"""The policy bundle and the model's input contract, shared by training and the runtime.

Torch-free: the exporter writes bundles with it, every engine reads them with it, the dataset
converter and reader use the same contract (DESIGN §1, §8).
"""
