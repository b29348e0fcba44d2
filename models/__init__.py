"""The bundled models (`asr.catalog` finds them): this folder installs as the package data of `asr.models`."""
