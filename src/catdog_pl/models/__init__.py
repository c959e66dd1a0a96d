"""Networks as plain ``nn.Module``s: the Keras CNN, the from-scratch ResNet, timm backbones by name, their
preprocessing and weight files, and :class:`~catdog_pl.models.classifier.Classifier`, the network with its input
normalisation and test-time mirror that inference runs. Imports ``core`` only; no Lightning.
"""
