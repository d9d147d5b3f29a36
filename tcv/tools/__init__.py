"""The programs TCV drives: the runner (the one door), buildah and skopeo."""
