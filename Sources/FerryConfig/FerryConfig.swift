/// Namespace for the FerryConfig module.
public enum FerryConfigModule {
    /// The module's name, used in log labels.
    public static let name = "FerryConfig"
}
