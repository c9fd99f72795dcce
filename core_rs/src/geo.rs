//! Geofence lookup (point → grid cells on every layer) and WGS-84 / GCJ-02 / BD-09 conversion.
