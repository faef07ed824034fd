import Testing

/// Tests that load the whole machine (a million-row queue, a 200 MiB file, tens of thousands of
/// batch lines) run one at a time, so none of them measures another's load.
@Suite(.serialized) enum HeavyTests {}
