/// Namespace for the FerryAWS module.
public enum FerryAWSModule {
    /// The module's name, used in log labels.
    public static let name = "FerryAWS"
}
