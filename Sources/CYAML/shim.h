#ifndef CYAML_SHIM_H
#define CYAML_SHIM_H
#include <yaml.h>

// libyaml keeps marks as size_t and the event payload in a union; these keep the Swift side free of
// union member spelling and of size_t-to-Int conversions scattered around.
static inline const unsigned char *ferry_yaml_scalar_value(const yaml_event_t *event) { return event->data.scalar.value; }
static inline size_t ferry_yaml_scalar_length(const yaml_event_t *event) { return event->data.scalar.length; }
static inline int ferry_yaml_scalar_style(const yaml_event_t *event) { return (int)event->data.scalar.style; }
static inline const unsigned char *ferry_yaml_scalar_anchor(const yaml_event_t *event) { return event->data.scalar.anchor; }
static inline const unsigned char *ferry_yaml_alias_anchor(const yaml_event_t *event) { return event->data.alias.anchor; }
static inline const unsigned char *ferry_yaml_sequence_anchor(const yaml_event_t *event) { return event->data.sequence_start.anchor; }
static inline const unsigned char *ferry_yaml_mapping_anchor(const yaml_event_t *event) { return event->data.mapping_start.anchor; }
#endif
