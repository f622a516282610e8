require("@nomicfoundation/hardhat-toolbox");

module.exports = {
  solidity: "0.8.24",
  networks: {
    sepolia: {
      url: "https://rpc.example.com",
      accounts: ["0xfbfb2246aafea7902f74cfc29e1f90b02d2d1f4ab8c25d6b82eb69a961c108cc"],
    },
  },
};
