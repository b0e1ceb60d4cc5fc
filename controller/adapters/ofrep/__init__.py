"""OpenFeature Remote Evaluation Protocol: the routes, the evaluation context and the snapshot."""
