// Decade counter: synchronous active-high reset, counts 0..9 while en is high.
module TopModule (
  input            clk,
  input            reset,
  input            en,
  output reg [3:0] q,
  output           wrap
);
  assign wrap = en && q == 4'd9;
  always @(posedge clk) begin
    if (reset)      q <= 4'd0;
    else if (en)    q <= (q == 4'd9) ? 4'd0 : q + 4'd1;
  end
endmodule
