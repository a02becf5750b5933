"""Input: image decoding, data sets, the built-in set, transforms, the decoded-image
cache, device decoding, loaders."""
