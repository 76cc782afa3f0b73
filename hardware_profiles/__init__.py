"""The built-in hardware profiles (one YAML file per target); see `nas.hardware`."""
