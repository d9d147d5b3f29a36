"""The cache image: manifest and labels, the layer (write), tar and unpack (read),
describe and fetch, fleet indexes, artifacts, names and trust."""
