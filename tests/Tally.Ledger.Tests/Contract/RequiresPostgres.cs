using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestFramework("Tally.Ledger.Tests.Contract.TallyTestFramework", "Tally.Ledger.Tests")]

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// Marks a test class that needs a PostgreSQL server. Its tests run, and fail with installation advice
/// when PostgreSQL is absent, unless TALLY_SKIP_POSTGRES_TESTS=1, which reports each of them as skipped.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class RequiresPostgresAttribute : Attribute;

/// <summary>
/// xunit 2 has no way for a test to skip itself at run time, and the contract tests are inherited from
/// <see cref="LedgerContract"/>, so the skip is decided at discovery: this is the default framework except
/// that, when asked to, it reports the tests of a <see cref="RequiresPostgresAttribute"/> class as skipped.
/// </summary>
public sealed class TallyTestFramework(IMessageSink messageSink) : XunitTestFramework(messageSink)
{
    protected override ITestFrameworkDiscoverer CreateDiscoverer(IAssemblyInfo assemblyInfo) =>
        new Discoverer(assemblyInfo, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Discoverer(IAssemblyInfo assemblyInfo, ISourceInformationProvider sourceProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkDiscoverer(assemblyInfo, sourceProvider, diagnosticMessageSink)
    {
        protected override bool FindTestsForMethod(
            ITestMethod testMethod, bool includeSourceInformation, IMessageBus messageBus, ITestFrameworkDiscoveryOptions discoveryOptions)
        {
            var skip = PostgresServer.SkipRequested
                && testMethod.TestClass.Class.GetCustomAttributes(typeof(RequiresPostgresAttribute)).Any()
                && testMethod.Method.GetCustomAttributes(typeof(FactAttribute)).Any();
            if (!skip) return base.FindTestsForMethod(testMethod, includeSourceInformation, messageBus, discoveryOptions);
            var skipped = new XunitSkippedDataRowTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(),
                discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod,
                $"{PostgresServer.SkipVariable}=1: PostgreSQL tests skipped (install PostgreSQL, e.g. apt-get install postgresql, to run them)");
            return ReportDiscoveredTestCase(skipped, includeSourceInformation, messageBus);
        }
    }
}
