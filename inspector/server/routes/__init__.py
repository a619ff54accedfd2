"""One router per resource: inspect, inspections, models/stations, health."""
