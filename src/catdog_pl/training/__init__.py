"""Training with Lightning: the ``LightningModule``, and the callbacks (TensorBoard pictures, the DDP watchdog,
atomic checkpoints). Imports ``core``, ``data``, ``models`` and ``evaluation``; nothing but the command line
imports it.
"""
