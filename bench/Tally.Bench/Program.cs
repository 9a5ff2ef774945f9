using BenchmarkDotNet.Running;
using Tally.Bench;

// BenchmarkDotNet: dotnet run -c Release --project bench/Tally.Bench -- --filter '*' --job short
// The harness's T4 figure: dotnet run -c Release --project bench/Tally.Bench -- throughput [seconds] [callers] [organizations]
if (args.Length > 0 && args[0] == "throughput")
{
    int Argument(int index, int fallback) => args.Length > index ? int.Parse(args[index]) : fallback;
    return await EngineThroughput.RunAsync(TimeSpan.FromSeconds(Argument(1, 10)), Argument(2, 1_024), Argument(3, 1_000));
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
