using System.Globalization;
using Xunit.Abstractions;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// The seed of a randomized test: new at every run unless TALLY_TEST_SEED is set, and always printed, so a
/// failure can be run again exactly (as far as the test's own choices go; thread timing is the machine's).
/// </summary>
public static class TestSeed
{
    public const string Variable = "TALLY_TEST_SEED";

    public static Random Create(ITestOutputHelper output, string testName)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable(Variable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var chosen)
            ? chosen
            : Random.Shared.Next();
        output.WriteLine($"{testName}: seed {seed} (run again with {Variable}={seed})");
        return new Random(seed);
    }
}
