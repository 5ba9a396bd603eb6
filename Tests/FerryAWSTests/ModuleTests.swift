import Testing
@testable import FerryAWS

@Test func moduleIsNamed() {
    #expect(FerryAWSModule.name == "FerryAWS")
}
